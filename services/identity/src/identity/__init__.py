"""Astra identity: customers and KYC, service clients, signed tokens and their public keys."""
