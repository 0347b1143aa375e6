"""The host agent: runs what the server assigns on one Docker Engine and reports what runs.

It never imports the server; the two share only the wire protocol: agent/protocol.py, with
agent/caps.py, agent/log_protocol.py, agent/codec.py and agent/strict.py.
"""
