# The deployhook module: everything deployhook needs on Google Cloud and GitHub to deploy
# one repository to one VM through IAP. Each resource says which of deployhook's calls
# needs it; the roles and the firewall range are the ones `deployhook check` asks for.

locals {
  # iap_source_range is the range IAP's TCP forwarding connects to VMs from
  # (https://cloud.google.com/iap/docs/using-tcp-forwarding); deployhook names it in
  # the advice for close code 4003.
  iap_source_range = "35.235.240.0/20"

  # The two permissions deployhook's transport iap calls on the instance:
  # instances.get (the instance's id, network interface and status) and
  # instances.getGuestAttributes (its SSH host keys under hostkeys/).
  instance_reader_permissions = [
    "compute.instances.get",
    "compute.instances.getGuestAttributes",
  ]

  tunnel_role  = "roles/iap.tunnelResourceAccessor"
  oslogin_role = var.oslogin_sudo ? "roles/compute.osAdminLogin" : "roles/compute.osLogin"

  cloud_run = var.runtime == "cloud_run"

  # database: the journal is in PostgreSQL (DEPLOYHOOK_DATABASE_URL from
  # database_url_secret_id), shared by every instance. data_bucket: the SQLite
  # journal's Cloud Storage bucket, made only for the one instance of runtime
  # cloud_run without a database.
  database    = var.database_url_secret_id != null
  data_bucket = local.cloud_run && !local.database

  # The Cloud SQL instance's project (possibly domain-scoped, example.com:my-project)
  # and name, from its connection name PROJECT:REGION:INSTANCE; null without one.
  cloud_sql = var.cloud_sql_instance == null ? null : regex("^(?P<project>.+):(?P<region>[^:]+):(?P<instance>[^:]+)$", var.cloud_sql_instance)

  # vm_metadata is what the VM's metadata must carry: guest attributes so the guest agent
  # publishes the host keys deployhook pins (set before the VM first boots, or reboot it
  # once), and OS Login when deployhook logs in through it.
  vm_metadata = merge(
    { "enable-guest-attributes" = "TRUE" },
    var.oslogin ? { "enable-oslogin" = "TRUE" } : {},
  )

  repository_name = split("/", var.github_repository)[1]

  # Cloud Run's deterministic URL (https://SERVICE-PROJECT_NUMBER.REGION.run.app), known
  # before the service exists, so the configuration given to the service can carry it as
  # public_url without a cycle.
  service_url = local.cloud_run ? "https://${var.name}-${data.google_project.this.number}.${var.region}.run.app" : var.public_url
  webhook_url = local.service_url == null ? null : "${trimsuffix(local.service_url, "/")}/webhook"

  apis = concat(
    [
      "compute.googleapis.com",
      "iap.googleapis.com",
      "secretmanager.googleapis.com",
      "iam.googleapis.com",
    ],
    var.oslogin ? ["oslogin.googleapis.com"] : [],
    local.cloud_run ? ["run.googleapis.com"] : [],
    local.data_bucket ? ["storage.googleapis.com"] : [],
    local.cloud_sql != null ? ["sqladmin.googleapis.com"] : [],
  )
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset(local.apis) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The identity deployhook runs as: it opens the IAP tunnels, reads the instance and its
# guest attributes, imports OS Login keys and reads its secrets. No key is made for it:
# on Cloud Run it is the service identity; on a VM of yours, run deployhook as it (the
# VM's service account) or give it a key through GOOGLE_APPLICATION_CREDENTIALS_FILE.
resource "google_service_account" "deployhook" {
  project      = var.project_id
  account_id   = var.name
  display_name = "deployhook"
  description  = "Deploys ${var.github_repository} to ${var.vm.name} through IAP (deployhook)."

  depends_on = [google_project_service.apis]

  # The rules that join several variables are checked here, on the one resource
  # always made: a variable's own validation sees only that variable before
  # Terraform 1.9.
  lifecycle {
    precondition {
      condition     = var.replicas == 1 || local.database
      error_message = "replicas above 1 needs database_url_secret_id (a PostgreSQL journal): the SQLite journal allows one writer, and two instances would each keep their own and deploy twice."
    }
    precondition {
      condition     = var.replicas == 1 || local.cloud_run
      error_message = "replicas sets the Cloud Run service's instances (runtime cloud_run): with runtime none, start the replicas yourself."
    }
    precondition {
      condition     = var.cloud_sql_instance == null || local.database
      error_message = "cloud_sql_instance needs database_url_secret_id, the secret holding the URL deployhook connects to it with."
    }
  }
}
