# The webhook secret: generated here, kept in Secret Manager for deployhook
# (DEPLOYHOOK_WEBHOOK_SECRET) and given to GitHub by the webhook below. It is in the
# Terraform state too, as every value Terraform passes on is: keep the state private.
resource "random_password" "webhook_secret" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "webhook_secret" {
  project   = var.project_id
  secret_id = "${var.name}-webhook-secret"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "webhook_secret" {
  secret      = google_secret_manager_secret.webhook_secret.id
  secret_data = random_password.webhook_secret.result
}

resource "google_secret_manager_secret_iam_member" "webhook_secret" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.webhook_secret.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.deployhook.member
}

# The key that seals the console's session cookies (DEPLOYHOOK_SESSION_KEY, 32
# bytes in hex): generated here like the webhook secret, so that every revision
# and instance opens the sessions the others sealed.
resource "random_id" "session_key" {
  byte_length = 32
}

resource "google_secret_manager_secret" "session_key" {
  project   = var.project_id
  secret_id = "${var.name}-session-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "session_key" {
  secret      = google_secret_manager_secret.session_key.id
  secret_data = random_id.session_key.hex
}

resource "google_secret_manager_secret_iam_member" "session_key" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.session_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.deployhook.member
}

# Secrets made outside Terraform (so they never enter the state) that deployhook reads.
resource "google_secret_manager_secret_iam_member" "external" {
  for_each = {
    for k, v in {
      github_token        = var.github_token_secret_id
      ssh_key             = var.ssh_key_secret_id
      oauth_client_secret = var.oauth_client_secret_secret_id
      database_url        = var.database_url_secret_id
    } : k => v if v != null
  }

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.deployhook.member
}
