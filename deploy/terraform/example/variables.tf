variable "project_id" {
  description = "The Google Cloud project of the VM."
  type        = string
}

variable "region" {
  description = "The region for deployhook's Cloud Run service and data bucket."
  type        = string
  default     = "us-central1"
}

variable "vm_name" {
  description = "The name of the VM to deploy to."
  type        = string
}

variable "vm_zone" {
  description = "The VM's zone, e.g. us-central1-a."
  type        = string
}

variable "vm_network" {
  description = "The VPC network of the VM."
  type        = string
  default     = "default"
}

variable "vm_tag" {
  description = "The network tag the IAP SSH firewall rule targets; add it to the VM."
  type        = string
  default     = "deployhook-ssh"
}

variable "oslogin" {
  description = "Log in through OS Login (the target's ssh.oslogin: true) instead of an SSH key."
  type        = bool
  default     = true
}

variable "vm_service_account_email" {
  description = "The VM's own service account (needed with oslogin), or null."
  type        = string
  default     = null
}

variable "github_repository" {
  description = "The repository to deploy, owner/name."
  type        = string
}

variable "branch" {
  description = "The branch whose pushes deploy."
  type        = string
  default     = "main"
}

variable "app_dir" {
  description = "The checkout on the VM."
  type        = string
  default     = "/opt/app"
}

variable "app_user" {
  description = "The user the app's commands run as on the VM."
  type        = string
  default     = "app"
}

variable "image" {
  description = "The deployhook container image, with a version tag or digest, in a registry Cloud Run pulls from (e.g. Artifact Registry)."
  type        = string
}

variable "github_token_secret_id" {
  description = "An existing Secret Manager secret with a GitHub token for commit statuses and Deployments, or null to log statuses only."
  type        = string
  default     = null
}

variable "ssh_key_secret_id" {
  description = "Without oslogin: an existing Secret Manager secret with the SSH private key of the VM's user deploy."
  type        = string
  default     = null
}

variable "oauth_client_id" {
  description = "The client ID of the GitHub OAuth App people sign in to the console with (its callback URL: the service URL + /auth/callback). The service is public, so its pages need a sign-in."
  type        = string

  validation {
    condition     = length(trimspace(var.oauth_client_id)) > 0
    error_message = "oauth_client_id is required: the console of a public service needs a sign-in."
  }
}

variable "oauth_client_secret_secret_id" {
  description = "An existing Secret Manager secret with that OAuth App's client secret."
  type        = string
}

variable "database_url_secret_id" {
  description = "For replicas: an existing Secret Manager secret with the PostgreSQL journal's URL, password included (postgres://deployhook:PASSWORD@/deployhook?host=/cloudsql/PROJECT:REGION:INSTANCE with cloud_sql_instance), or null for one instance with the SQLite journal in a bucket."
  type        = string
  default     = null
}

variable "cloud_sql_instance" {
  description = "With database_url_secret_id: the Cloud SQL instance's connection name, PROJECT:REGION:INSTANCE, or null for a database reached by address."
  type        = string
  default     = null
}

variable "replicas" {
  description = "How many deployhook instances run; above 1 needs database_url_secret_id."
  type        = number
  default     = 1
}
