"""The identity domain: customers and their KYC lifecycle, service clients, signing keys (pure)."""
