terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.30, < 8.0"
    }
    github = {
      source  = "integrations/github"
      version = ">= 6.0, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

# Authenticates with GITHUB_TOKEN (a token that may administer the repository's hooks:
# fine-grained "Webhooks: read and write") or GITHUB_APP_* from the environment.
provider "github" {
  owner = split("/", var.github_repository)[0]
}
