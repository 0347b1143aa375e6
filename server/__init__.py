"""The Flotilla server: REST API, agent hub, rollout controller, and the database behind them."""
