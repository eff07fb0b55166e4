# IAM for deployhook's service account, on the VM alone wherever a role can be granted
# there.

# IAP TCP forwarding to the VM (the tunnel's websocket is refused with 4033 without it).
resource "google_iap_tunnel_instance_iam_member" "tunnel" {
  project  = var.project_id
  zone     = var.vm.zone
  instance = var.vm.name
  role     = local.tunnel_role
  member   = google_service_account.deployhook.member

  depends_on = [google_project_service.apis]
}

# The smallest role with the two permissions deployhook uses on the instance.
resource "google_project_iam_custom_role" "instance_reader" {
  count = var.instance_reader_role == "custom" ? 1 : 0

  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_instance_reader"
  title       = "deployhook instance reader"
  description = "Reads a VM and its guest attributes (the SSH host keys) for deployhook."
  permissions = local.instance_reader_permissions
}

resource "google_compute_instance_iam_member" "instance_reader" {
  count = var.instance_reader_role == "custom" ? 1 : 0

  project       = var.project_id
  zone          = var.vm.zone
  instance_name = var.vm.name
  role          = google_project_iam_custom_role.instance_reader[0].id
  member        = google_service_account.deployhook.member
}

resource "google_project_iam_member" "compute_viewer" {
  count = var.instance_reader_role == "roles/compute.viewer" ? 1 : 0

  project = var.project_id
  role    = "roles/compute.viewer"
  member  = google_service_account.deployhook.member
}

# OS Login: a POSIX account on the VM for the service account (with sudo by default, as
# the default deploy sequence needs), granted on the instance.
resource "google_compute_instance_iam_member" "oslogin" {
  count = var.oslogin ? 1 : 0

  project       = var.project_id
  zone          = var.vm.zone
  instance_name = var.vm.name
  role          = local.oslogin_role
  member        = google_service_account.deployhook.member
}

# OS Login on a VM that has a service account of its own also needs the right to act as
# that account.
resource "google_service_account_iam_member" "oslogin_vm_account" {
  count = var.oslogin && var.vm.service_account_email != null ? 1 : 0

  service_account_id = "projects/${var.project_id}/serviceAccounts/${var.vm.service_account_email}"
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployhook.member
}

# Cloud SQL's connector (the /cloudsql socket) needs cloudsql.instances.connect and
# cloudsql.instances.get. Cloud SQL has no per-instance policy: the role is granted on
# the instance's project with a condition naming the one instance.
resource "google_project_iam_member" "cloudsql_client" {
  count = local.cloud_sql != null ? 1 : 0

  project = local.cloud_sql.project
  role    = "roles/cloudsql.client"
  member  = google_service_account.deployhook.member

  condition {
    title       = "${var.name}-cloudsql-client"
    description = "Connect to the Cloud SQL instance of deployhook's journal only."
    expression  = "resource.name == 'projects/${local.cloud_sql.project}/instances/${local.cloud_sql.instance}' && resource.type == 'sqladmin.googleapis.com/Instance'"
  }
}
