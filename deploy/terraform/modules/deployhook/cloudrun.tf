# deployhook on Cloud Run (runtime = "cloud_run").
#
# deployhook answers a delivery with 202 and deploys afterwards, so the CPU must stay
# allocated between requests (cpu_idle = false), and the one instance must always run
# (min = max = 1): the SQLite journal allows one writer, and the reconciler and the
# outbox of owed GitHub reports work with no request in flight.
#
# The journal lives in a Cloud Storage bucket mounted at /data (the only writable
# persistent volume the nonroot image can use: Cloud Run writes to NFS only as root).
# Cloud Storage FUSE has no file locking and uploads a file again on every sync, so
# exactly one instance may ever write it: a new revision starts before the old one has
# stopped, which is why this service must not be redeployed while a deploy runs.
# Untested against real Google Cloud; a small VM (runtime = "none") avoids both limits.

locals {
  # The container's user (distroless nonroot); the mount must belong to it, as deployhook
  # refuses a data_dir owned by another user or open to group or others.
  container_uid = 65532

  secret_env = {
    for k, v in {
      DEPLOYHOOK_GITHUB_TOKEN        = var.github_token_secret_id
      DEPLOYHOOK_SSH_KEY             = var.ssh_key_secret_id
      DEPLOYHOOK_OAUTH_CLIENT_SECRET = var.oauth_client_secret_secret_id
    } : k => v if v != null
  }
}

resource "google_storage_bucket" "data" {
  count = local.cloud_run ? 1 : 0

  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-data"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 20
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "data" {
  count = local.cloud_run ? 1 : 0

  bucket = google_storage_bucket.data[0].name
  role   = "roles/storage.objectUser"
  member = google_service_account.deployhook.member
}

# Cloud Run has no config maps: the (non-secret) configuration is mounted from Secret
# Manager like a secret.
resource "google_secret_manager_secret" "config" {
  count = local.cloud_run ? 1 : 0

  project   = var.project_id
  secret_id = "${var.name}-config"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "config" {
  count = local.cloud_run ? 1 : 0

  secret      = google_secret_manager_secret.config[0].id
  secret_data = var.config_yaml
}

resource "google_secret_manager_secret_iam_member" "config" {
  count = local.cloud_run ? 1 : 0

  project   = var.project_id
  secret_id = google_secret_manager_secret.config[0].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.deployhook.member
}

resource "google_cloud_run_v2_service" "deployhook" {
  count = local.cloud_run ? 1 : 0

  project             = var.project_id
  name                = var.name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection

  template {
    service_account       = google_service_account.deployhook.email
    execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
    timeout               = "60s"

    scaling {
      min_instance_count = 1
      max_instance_count = 1
    }

    containers {
      image = var.image
      args  = ["serve", "--config", "/etc/deployhook/config.yaml", "--listen", "0.0.0.0:8080", "--data-dir", "/data"]

      ports {
        container_port = 8080
      }

      resources {
        cpu_idle          = false
        startup_cpu_boost = true
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
      }

      env {
        name = "DEPLOYHOOK_WEBHOOK_SECRET"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.webhook_secret.secret_id
            version = google_secret_manager_secret_version.webhook_secret.version
          }
        }
      }

      # Seals the console's session cookies: sessions outlive a new revision.
      env {
        name = "DEPLOYHOOK_SESSION_KEY"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.session_key.secret_id
            version = google_secret_manager_secret_version.session_key.version
          }
        }
      }

      dynamic "env" {
        for_each = local.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      volume_mounts {
        name       = "config"
        mount_path = "/etc/deployhook"
      }

      volume_mounts {
        name       = "data"
        mount_path = "/data"
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
      }
    }

    volumes {
      name = "config"
      secret {
        secret = google_secret_manager_secret.config[0].secret_id
        items {
          version = google_secret_manager_secret_version.config[0].version
          path    = "config.yaml"
          mode    = 292 # 0444: the configuration holds no secret
        }
      }
    }

    volumes {
      name = "data"
      gcs {
        bucket    = google_storage_bucket.data[0].name
        read_only = false
        mount_options = [
          "uid=${local.container_uid}",
          "gid=${local.container_uid}",
          "file-mode=600",
          "dir-mode=700",
        ]
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.image != null && var.config_yaml != null
      error_message = "runtime cloud_run needs image (the deployhook container image) and config_yaml (its configuration)."
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.webhook_secret,
    google_secret_manager_secret_iam_member.session_key,
    google_secret_manager_secret_iam_member.config,
    google_secret_manager_secret_iam_member.external,
    google_storage_bucket_iam_member.data,
  ]
}

# GitHub's deliveries carry no Google identity: the service is public, and every request
# to /webhook is authenticated by its HMAC signature instead.
resource "google_cloud_run_v2_service_iam_member" "public" {
  count = local.cloud_run ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.deployhook[0].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
