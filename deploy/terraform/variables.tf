variable "project_id" {
  description = "Google Cloud project that hosts the suite."
  type        = string
}

variable "region" {
  description = "Region of the Cloud SQL instances (and the provider's default)."
  type        = string
  default     = "europe-west1"
}

variable "environment" {
  description = "Short environment name, part of every resource name (dev, staging, prod)."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.environment))
    error_message = "environment: 2-15 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "contexts" {
  description = "The bounded contexts: each gets an events topic, a PostgreSQL instance and a service account."
  type        = list(string)
  default     = ["identity", "ledger", "payments"]
}

variable "subscriptions" {
  description = <<-EOT
    Event subscriptions, by name: which context consumes which context's events.
    Every one gets message ordering (events of one aggregate arrive in order), a
    retry policy and a dead-letter topic.
  EOT
  type = map(object({
    consumer = string
    producer = string
  }))
  default = {
    "payments-ledger-events"   = { consumer = "payments", producer = "ledger" }
    "payments-identity-events" = { consumer = "payments", producer = "identity" }
  }
}

variable "message_retention" {
  description = "How long a topic keeps messages (lets a subscription seek back after an incident)."
  type        = string
  default     = "604800s"
}

variable "ack_deadline_seconds" {
  description = "Time a subscriber has to acknowledge a message before it is redelivered."
  type        = number
  default     = 60
}

variable "retry_minimum_backoff" {
  description = "Shortest wait before a nacked or expired message is redelivered."
  type        = string
  default     = "10s"
}

variable "retry_maximum_backoff" {
  description = "Longest wait before a nacked or expired message is redelivered."
  type        = string
  default     = "600s"
}

variable "max_delivery_attempts" {
  description = "Deliveries of one message before it goes to the subscription's dead-letter topic (5-100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts."
  }
}

variable "database_version" {
  description = "Cloud SQL engine of every context's instance."
  type        = string
  default     = "POSTGRES_15"
}

variable "database_tiers" {
  description = "Machine tier per context; contexts not listed get default_database_tier."
  type        = map(string)
  default     = { ledger = "db-custom-4-16384" }
}

variable "default_database_tier" {
  description = "Machine tier of a context's instance unless database_tiers names one."
  type        = string
  default     = "db-custom-2-8192"
}

variable "database_high_availability" {
  description = "Regional (failover) instances instead of zonal ones."
  type        = bool
  default     = true
}

variable "database_disk_size_gb" {
  description = "Initial disk of each instance (it grows automatically)."
  type        = number
  default     = 50
}

variable "private_network" {
  description = "Self link of the VPC the instances get their private IP in (private services access must be set up)."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse to destroy the databases (turn off only to tear down a test environment)."
  type        = bool
  default     = true
}

variable "kubernetes_namespace" {
  description = "Namespace of the suite's Kubernetes service accounts (Workload Identity)."
  type        = string
  default     = "astra"
}
