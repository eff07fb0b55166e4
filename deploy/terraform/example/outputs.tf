output "service_url" {
  description = "deployhook's URL (its pages and /healthz)."
  value       = module.deployhook.service_url
}

output "webhook_url" {
  description = "The URL the repository webhook delivers to."
  value       = module.deployhook.webhook_url
}

output "service_account_email" {
  description = "deployhook's service account."
  value       = module.deployhook.service_account_email
}

output "vm_metadata" {
  description = "Merge into the VM's metadata (enable-guest-attributes, enable-oslogin)."
  value       = module.deployhook.vm_metadata
}

output "vm_network_tag" {
  description = "Add to the VM's network tags."
  value       = module.deployhook.vm_network_tag
}
