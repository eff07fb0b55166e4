variable "project_id" {
  description = "The Google Cloud project the VM lives in; deployhook's service account, secrets and (runtime cloud_run) service are made here too."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6 to 30 lower-case letters, digits or hyphens, starting with a letter), not a project number or name."
  }
}

variable "region" {
  description = "The region of the Cloud Run service and of the data bucket (runtime cloud_run; the bucket only without a database)."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a region such as us-central1 (not a zone such as us-central1-a)."
  }
}

variable "name" {
  description = "The name of deployhook's service account, secrets, custom role, bucket and service (a prefix where more than one is made)."
  type        = string
  default     = "deployhook"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,20}[a-z0-9]$", var.name))
    error_message = "name must be 6 to 22 lower-case letters, digits or hyphens, starting with a letter and not ending with a hyphen (service account IDs allow 30 characters and the longest suffix is 8)."
  }
}

variable "enable_apis" {
  description = "Enable the APIs deployhook needs (Compute Engine, IAP, Secret Manager, OS Login, Cloud Run when used). Leaving them enabled on destroy is deliberate: other workloads may use them."
  type        = bool
  default     = true
}

variable "vm" {
  description = <<-EOT
    The VM deployhook deploys to. name and zone are the instance's; network is the VPC it
    sits in (name or self link); tag is a network tag on the instance, which the IAP
    firewall rule targets (add it to the instance's tags). service_account_email is the
    VM's own service account, needed only with oslogin (deployhook must be able to act as
    it: roles/iam.serviceAccountUser); leave it null when the VM has none.
  EOT
  type = object({
    name                  = string
    zone                  = string
    network               = string
    tag                   = optional(string, "deployhook-ssh")
    service_account_email = optional(string)
  })

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.vm.name))
    error_message = "vm.name must be a Compute Engine instance name (lower-case letters, digits and hyphens, at most 63)."
  }
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]-[a-z]$", var.vm.zone))
    error_message = "vm.zone must be a zone such as us-central1-a."
  }
  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.vm.tag))
    error_message = "vm.tag must be a network tag (lower-case letters, digits and hyphens, at most 63)."
  }
}

variable "manage_firewall" {
  description = "Create the VPC firewall rule that lets IAP (35.235.240.0/20) reach tcp/22 on instances with vm.tag. Set false when a rule of yours already allows it."
  type        = bool
  default     = true
}

variable "instance_reader_role" {
  description = "How deployhook gets compute.instances.get and compute.instances.getGuestAttributes: \"custom\" makes a custom role with exactly those two permissions and grants it on the VM alone; \"roles/compute.viewer\" grants that predefined role on the project (it reads much more)."
  type        = string
  default     = "custom"

  validation {
    condition     = contains(["custom", "roles/compute.viewer"], var.instance_reader_role)
    error_message = "instance_reader_role must be \"custom\" or \"roles/compute.viewer\"."
  }
}

variable "oslogin" {
  description = "Log in through OS Login (the target's ssh.oslogin: true): grant deployhook an OS Login role on the VM and roles/iam.serviceAccountUser on the VM's service account. Without it deployhook logs in with its own SSH key (ssh_key_secret_id)."
  type        = bool
  default     = false
}

variable "oslogin_sudo" {
  description = "With oslogin, grant roles/compute.osAdminLogin (sudo, which the default deploy sequence needs) rather than roles/compute.osLogin."
  type        = bool
  default     = true
}

variable "manage_project_metadata" {
  description = <<-EOT
    Set enable-guest-attributes (and enable-oslogin with oslogin) as project metadata. Off by
    default because it changes every VM of the project: the recommended way is to merge the
    vm_metadata output into the metadata of the VM's own google_compute_instance (instance
    metadata wins over project metadata, so an instance that sets FALSE is not changed by this).
  EOT
  type        = bool
  default     = false
}

variable "runtime" {
  description = <<-EOT
    Where deployhook runs. "cloud_run": a Cloud Run service made here (CPU always allocated;
    exactly one instance with the SQLite journal on a Cloud Storage volume, or replicas
    instances sharing the PostgreSQL journal of database_url_secret_id). "none": you run it
    yourself (a small VM with deploy/systemd/deployhook.service, or the target VM itself) as
    this module's service account, and give its public URL in public_url.
  EOT
  type        = string

  validation {
    condition     = contains(["cloud_run", "none"], var.runtime)
    error_message = "runtime must be \"cloud_run\" or \"none\"."
  }
}

variable "image" {
  description = "The deployhook container image for Cloud Run, e.g. us-docker.pkg.dev/PROJECT/REPO/deployhook:v1.0.0 (Cloud Run pulls from Artifact Registry, Container Registry or Docker Hub). Pin a version or a digest, never latest."
  type        = string
  default     = null

  validation {
    condition     = var.image == null || can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^:@ ]+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$", var.image))
    error_message = "image must be a registry path with a tag or a digest."
  }
  validation {
    condition     = var.image == null || !endswith(coalesce(var.image, "-"), ":latest")
    error_message = "image must not use the tag latest: a restart would deploy whatever it points to."
  }
}

variable "config_yaml" {
  description = "deployhook's configuration file (see config/example.yaml), for runtime cloud_run: it is stored in Secret Manager and mounted at /etc/deployhook/config.yaml. It must not contain secrets (deployhook refuses them in the file anyway)."
  type        = string
  default     = null
}

variable "public_url" {
  description = "With runtime none: the https URL deployhook is reachable at (the webhook goes to public_url/webhook). Ignored with cloud_run, whose URL is known."
  type        = string
  default     = null

  validation {
    condition     = var.public_url == null || can(regex("^https://[^/?#]+(/[^?#]*)?$", var.public_url))
    error_message = "public_url must be an https URL without query or fragment: GitHub would send the webhook secret's signatures over plain http."
  }
}

variable "github_repository" {
  description = "The repository to deploy, as owner/name (the target's repo:). The github provider's owner must be the same owner."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "manage_webhook" {
  description = "Create the repository webhook (push, workflow_run, workflow_dispatch; JSON; signed with the generated secret). Set false when a GitHub App delivers the events instead."
  type        = bool
  default     = true
}

variable "github_token_secret_id" {
  description = "The ID of an existing Secret Manager secret (in project_id) holding a GitHub token for DEPLOYHOOK_GITHUB_TOKEN, or null. Made outside Terraform so the token never enters the state; deployhook's service account may read it."
  type        = string
  default     = null
}

variable "ssh_key_secret_id" {
  description = "The ID of an existing Secret Manager secret holding the SSH private key for DEPLOYHOOK_SSH_KEY (not needed with oslogin), or null. Made outside Terraform so the key never enters the state."
  type        = string
  default     = null
}

variable "oauth_client_secret_secret_id" {
  description = "The ID of an existing Secret Manager secret holding the console's GitHub OAuth client secret for DEPLOYHOOK_OAUTH_CLIENT_SECRET (ui.auth: github), or null. Made outside Terraform so the secret never enters the state."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Protect the Cloud Run service and the data bucket (without a database) from terraform destroy (the bucket holds the deploy history)."
  type        = bool
  default     = true
}

variable "database_url_secret_id" {
  description = "The ID of an existing Secret Manager secret holding the URL of a PostgreSQL database for the journal, password included, for DEPLOYHOOK_DATABASE_URL (with cloud_sql_instance: postgres://USER:PASSWORD@/DATABASE?host=/cloudsql/PROJECT:REGION:INSTANCE), or null for the SQLite journal. Made outside Terraform so the password never enters the state. With it, runtime cloud_run makes no data bucket and runs replicas instances, and the configuration must say replicas: true."
  type        = string
  default     = null
}

variable "cloud_sql_instance" {
  description = "With database_url_secret_id, the connection name (PROJECT:REGION:INSTANCE) of the Cloud SQL for PostgreSQL instance the URL names: Cloud Run mounts the instance's socket under /cloudsql (the URL's host parameter), and deployhook's service account gets roles/cloudsql.client on that instance alone. Null for a database Cloud Run reaches at an address of its own."
  type        = string
  default     = null

  validation {
    condition     = var.cloud_sql_instance == null || can(regex("^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]:[a-z]+-[a-z]+[0-9]:[a-z]([-a-z0-9]{0,96}[a-z0-9])?$", var.cloud_sql_instance))
    error_message = "cloud_sql_instance must be an instance's connection name, PROJECT:REGION:INSTANCE (gcloud sql instances describe INSTANCE --format='value(connectionName)')."
  }
}

variable "replicas" {
  description = "How many deployhook instances Cloud Run runs, all always on (min = max). Above 1 needs database_url_secret_id: the SQLite journal allows one writer. Two or three are enough: one target's deploys run one at a time whatever the count."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.replicas >= 1 && var.replicas <= 10 && floor(var.replicas) == var.replicas
    error_message = "replicas must be a whole number from 1 to 10."
  }
}
