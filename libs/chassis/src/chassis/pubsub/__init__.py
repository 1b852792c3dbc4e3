"""Pub/Sub for every context: CloudEvents attributes, clients, subscriber helper, tail tool."""
