# deployhook on Cloud Run (runtime = "cloud_run").
#
# deployhook answers a delivery with 202 and deploys afterwards, so the CPU must stay
# allocated between requests (cpu_idle = false), and every instance must always run
# (min = max): the reconciler, the lane leases and the outbox of owed GitHub reports
# work with no request in flight.
#
# Without a database (the default) there is one instance, and the SQLite journal lives
# in a Cloud Storage bucket mounted at /data (the only writable persistent volume the
# nonroot image can use: Cloud Run writes to NFS only as root). Cloud Storage FUSE has
# no file locking and uploads a file again on every sync, so exactly one instance may
# ever write it: a new revision starts before the old one has stopped, which is why
# this service must not be redeployed while a deploy runs.
#
# With database_url_secret_id the journal is PostgreSQL (DEPLOYHOOK_DATABASE_URL from
# that secret): no bucket is made, var.replicas instances share the database, and a new
# revision may roll out at any time (the replicas' lane leases hand a target over). A
# Cloud SQL instance (cloud_sql_instance) is reached through the socket Cloud Run mounts
# under /cloudsql, with no VPC to set up.
# Untested against real Google Cloud; a small VM (runtime = "none") avoids these limits.

locals {
  # The container's user (distroless nonroot); the mount must belong to it, as deployhook
  # refuses a data_dir owned by another user or open to group or others.
  container_uid = 65532

  secret_env = {
    for k, v in {
      DEPLOYHOOK_GITHUB_TOKEN        = var.github_token_secret_id
      DEPLOYHOOK_SSH_KEY             = var.ssh_key_secret_id
      DEPLOYHOOK_OAUTH_CLIENT_SECRET = var.oauth_client_secret_secret_id
      DEPLOYHOOK_DATABASE_URL        = var.database_url_secret_id
    } : k => v if v != null
  }
}

resource "google_storage_bucket" "data" {
  count = local.data_bucket ? 1 : 0

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
  count = local.data_bucket ? 1 : 0

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
      min_instance_count = var.replicas
      max_instance_count = var.replicas
    }

    containers {
      image = var.image
      args = concat(
        ["serve", "--config", "/etc/deployhook/config.yaml", "--listen", "0.0.0.0:8080"],
        local.data_bucket ? ["--data-dir", "/data"] : [],
      )

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

      dynamic "volume_mounts" {
        for_each = local.data_bucket ? ["data"] : []
        content {
          name       = volume_mounts.value
          mount_path = "/data"
        }
      }

      # Cloud Run serves the instance's socket as /cloudsql/PROJECT:REGION:INSTANCE.
      dynamic "volume_mounts" {
        for_each = local.cloud_sql != null ? ["cloudsql"] : []
        content {
          name       = volume_mounts.value
          mount_path = "/cloudsql"
        }
      }

      # With a database, an instance takes traffic once it can write to it (/readyz);
      # the liveness probe stays /healthz, or a database outage would restart every
      # instance at once.
      startup_probe {
        http_get {
          path = local.database ? "/readyz" : "/healthz"
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

    dynamic "volumes" {
      for_each = local.data_bucket ? ["data"] : []
      content {
        name = volumes.value
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

    dynamic "volumes" {
      for_each = local.cloud_sql != null ? ["cloudsql"] : []
      content {
        name = volumes.value
        cloud_sql_instance {
          instances = [var.cloud_sql_instance]
        }
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
    google_project_iam_member.cloudsql_client,
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
