"""The factory's built-in web server: status page, pilot logs, metrics, JSON and admin API."""
