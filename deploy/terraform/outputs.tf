output "topics" {
  description = "Events topic of each context (RELAY_TOPIC, if not the default astra-<context>-events)."
  value       = { for context, topic in google_pubsub_topic.events : context => topic.name }
}

output "subscriptions" {
  description = "Subscriptions by name, with their dead-letter topics."
  value = {
    for name, subscription in google_pubsub_subscription.events : name => {
      topic             = subscription.topic
      dead_letter_topic = google_pubsub_topic.dead_letter[name].name
    }
  }
}

output "service_accounts" {
  description = "Google service account of each context: annotate its Kubernetes service account with iam.gke.io/gcp-service-account."
  value       = { for context, account in google_service_account.context : context => account.email }
}

output "database_instances" {
  description = "Cloud SQL connection name and private IP of each context's instance."
  value = {
    for context, instance in google_sql_database_instance.context : context => {
      connection_name = instance.connection_name
      private_ip      = instance.private_ip_address
    }
  }
}

output "database_urls" {
  description = "<CONTEXT>_DATABASE_URL of each context, for its Kubernetes Secret (<context>-secrets)."
  sensitive   = true
  value = {
    for context in var.contexts : context => format(
      # verify-full: the server's certificate must chain to postgres-ca (mounted at
      # /etc/astra/postgres by every Deployment) and name the address dialled.
      "postgresql://%s:%s@%s:5432/%s?sslmode=verify-full&sslrootcert=/etc/astra/postgres/ca.crt",
      google_sql_user.context[context].name,
      random_password.database[context].result,
      google_sql_database_instance.context[context].private_ip_address,
      google_sql_database.context[context].name,
    )
  }
}

output "database_server_ca" {
  description = "CA certificates (PEM) of the instances' server certificates: ca.crt of the Kubernetes Secret postgres-ca."
  value = join("", distinct([
    for context in var.contexts : google_sql_database_instance.context[context].server_ca_cert[0].cert
  ]))
}
