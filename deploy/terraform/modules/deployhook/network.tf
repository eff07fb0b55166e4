# IAP's TCP forwarding reaches the VM from 35.235.240.0/20; without this rule the relay
# closes the tunnel with 4003 ("failed to connect to backend").
resource "google_compute_firewall" "iap_ssh" {
  count = var.manage_firewall ? 1 : 0

  project     = var.project_id
  name        = "${var.name}-allow-iap-ssh"
  network     = var.vm.network
  description = "IAP TCP forwarding to SSH on instances tagged ${var.vm.tag} (deployhook)."
  direction   = "INGRESS"

  source_ranges = [local.iap_source_range]
  target_tags   = [var.vm.tag]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }

  depends_on = [google_project_service.apis]
}

# Opt-in project-wide metadata; see var.manage_project_metadata for why the VM's own
# metadata is the better place.
resource "google_compute_project_metadata_item" "vm" {
  for_each = var.manage_project_metadata ? local.vm_metadata : {}

  project = var.project_id
  key     = each.key
  value   = each.value

  depends_on = [google_project_service.apis]
}
