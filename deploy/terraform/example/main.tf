# An example: deployhook on Cloud Run deploying github_repository's branch to one VM
# through IAP, logging in with OS Login. Copy it, set the variables (see
# terraform.tfvars.example) and run terraform init && terraform apply.

module "deployhook" {
  source = "../modules/deployhook"

  project_id        = var.project_id
  region            = var.region
  github_repository = var.github_repository

  vm = {
    name                  = var.vm_name
    zone                  = var.vm_zone
    network               = var.vm_network
    tag                   = var.vm_tag
    service_account_email = var.vm_service_account_email
  }

  oslogin                = var.oslogin
  ssh_key_secret_id      = var.oslogin ? null : var.ssh_key_secret_id
  runtime                = "cloud_run"
  image                  = var.image
  github_token_secret_id = var.github_token_secret_id

  oauth_client_secret_secret_id = var.oauth_client_secret_secret_id

  # Replicas: with database_url_secret_id the journal is PostgreSQL and no bucket is
  # made; cloud_sql_instance mounts a Cloud SQL instance's socket; replicas instances.
  database_url_secret_id = var.database_url_secret_id
  cloud_sql_instance     = var.cloud_sql_instance
  replicas               = var.replicas

  # The configuration deployhook reads. Secrets never go here: the webhook secret and
  # the GitHub token come from Secret Manager through the environment.
  config_yaml = templatefile("${path.module}/config.yaml.tftpl", {
    repository = var.github_repository
    branch     = var.branch
    project_id = var.project_id
    zone       = var.vm_zone
    vm_name    = var.vm_name
    app_dir    = var.app_dir
    app_user   = var.app_user
    oslogin    = var.oslogin
    public_url = module.deployhook.service_url
    client_id  = var.oauth_client_id
    replicas   = var.database_url_secret_id != null
  })
}
