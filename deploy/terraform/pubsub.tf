# One events topic per context (the relay publishes its outbox there), and the
# subscriptions other contexts read it through, each with a dead-letter topic.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Pub/Sub's own service agent moves messages to dead-letter topics.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "events" {
  for_each = toset(var.contexts)

  name                       = "astra-${each.key}-events"
  message_retention_duration = var.message_retention
  labels = {
    context     = each.key
    environment = var.environment
  }
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = var.subscriptions

  name                       = "${each.key}-dead-letter"
  message_retention_duration = var.message_retention
  labels = {
    context     = each.value.consumer
    environment = var.environment
  }
}

# Keeps dead letters until someone looks at them (a topic alone keeps nothing readable).
resource "google_pubsub_subscription" "dead_letter_hold" {
  for_each = var.subscriptions

  name                       = "${each.key}-dead-letter-hold"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  message_retention_duration = var.message_retention
  ack_deadline_seconds       = var.ack_deadline_seconds

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "events" {
  for_each = var.subscriptions

  name                       = each.key
  topic                      = google_pubsub_topic.events[each.value.producer].id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention
  # Events of one aggregate share an ordering key (one of 64 per topic, see the
  # README's Events): they arrive in order.
  enable_message_ordering = true

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  labels = {
    consumer    = each.value.consumer
    producer    = each.value.producer
    environment = var.environment
  }
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = var.subscriptions

  topic  = google_pubsub_topic.dead_letter[each.key].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_forwarder" {
  for_each = var.subscriptions

  subscription = google_pubsub_subscription.events[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
