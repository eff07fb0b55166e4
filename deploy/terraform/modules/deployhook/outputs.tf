output "service_account_email" {
  description = "The email of deployhook's service account (run deployhook as it)."
  value       = google_service_account.deployhook.email
}

output "service_url" {
  description = "Where deployhook answers: the Cloud Run service's URL, or public_url with runtime none."
  value       = local.service_url
}

output "webhook_url" {
  description = "The URL GitHub delivers to (service_url/webhook), or null when service_url is unknown."
  value       = local.webhook_url
}

output "webhook_secret_id" {
  description = "The Secret Manager secret holding the webhook secret (DEPLOYHOOK_WEBHOOK_SECRET): with runtime none, mount it as DEPLOYHOOK_WEBHOOK_SECRET_FILE."
  value       = google_secret_manager_secret.webhook_secret.id
}

output "vm_metadata" {
  description = "Metadata the VM must carry: merge it into its google_compute_instance's metadata (or set manage_project_metadata)."
  value       = local.vm_metadata
}

output "vm_network_tag" {
  description = "The network tag the IAP firewall rule targets: add it to the VM's tags."
  value       = var.vm.tag
}
