# PostgreSQL per context: each context owns its data and its migrations.

resource "google_sql_database_instance" "context" {
  for_each = toset(var.contexts)

  name                = "astra-${var.environment}-${each.key}"
  database_version    = var.database_version
  region              = var.region
  deletion_protection = var.deletion_protection

  settings {
    tier              = lookup(var.database_tiers, each.key, var.default_database_tier)
    availability_type = var.database_high_availability ? "REGIONAL" : "ZONAL"
    disk_type         = "PD_SSD"
    disk_size         = var.database_disk_size_gb
    disk_autoresize   = true

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.private_network
      ssl_mode        = "ENCRYPTED_ONLY"
      # The shared CA hierarchy: its server certificates name the instance's addresses,
      # so clients can check the server they dialled (sslmode=verify-full), not only the CA.
      server_ca_mode = "GOOGLE_MANAGED_CAS_CA"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "02:00"
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = 14
      }
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled = true
    }

    database_flags {
      name  = "max_connections"
      value = "400"
    }

    user_labels = {
      context     = each.key
      environment = var.environment
    }
  }
}

resource "google_sql_database" "context" {
  for_each = toset(var.contexts)

  name     = each.key
  instance = google_sql_database_instance.context[each.key].name
}

resource "random_password" "database" {
  for_each = toset(var.contexts)

  length  = 32
  special = false
}

resource "google_sql_user" "context" {
  for_each = toset(var.contexts)

  name     = "astra-${each.key}"
  instance = google_sql_database_instance.context[each.key].name
  password = random_password.database[each.key].result
}
