# The repository webhook. The github provider's owner must be the repository's owner
# (the example configures it from github_repository).
resource "github_repository_webhook" "deployhook" {
  count = var.manage_webhook ? 1 : 0

  repository = local.repository_name
  active     = true
  events     = ["push", "workflow_run", "workflow_dispatch"]

  configuration {
    url          = local.webhook_url
    content_type = "json"
    insecure_ssl = false
    secret       = random_password.webhook_secret.result
  }

  lifecycle {
    precondition {
      condition     = local.webhook_url != null
      error_message = "the webhook needs deployhook's URL: with runtime none, set public_url (or set manage_webhook = false)."
    }
  }
}
