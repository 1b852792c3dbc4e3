# A service account per context, used by its server and its relay through
# GKE Workload Identity (the Kubernetes service account of the same name).

resource "google_service_account" "context" {
  for_each = toset(var.contexts)

  account_id   = "astra-${var.environment}-${each.key}"
  display_name = "Astra ${each.key} (${var.environment})"
}

# The relay publishes the context's own events, and nothing else.
resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = toset(var.contexts)

  topic  = google_pubsub_topic.events[each.key].id
  role   = "roles/pubsub.publisher"
  member = google_service_account.context[each.key].member
}

# Each consumer reads its own subscriptions only.
resource "google_pubsub_subscription_iam_member" "subscriber" {
  for_each = var.subscriptions

  subscription = google_pubsub_subscription.events[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.context[each.value.consumer].member
}

# Subscribers that park a poison message publish it to their dead-letter topic themselves.
resource "google_pubsub_topic_iam_member" "dead_letter_own" {
  for_each = var.subscriptions

  topic  = google_pubsub_topic.dead_letter[each.key].id
  role   = "roles/pubsub.publisher"
  member = google_service_account.context[each.value.consumer].member
}

resource "google_project_iam_member" "cloudsql_client" {
  for_each = toset(var.contexts)

  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = google_service_account.context[each.key].member
}

resource "google_service_account_iam_member" "workload_identity" {
  for_each = toset(var.contexts)

  service_account_id = google_service_account.context[each.key].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.kubernetes_namespace}/${each.key}]"
}
