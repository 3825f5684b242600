# A GKE cluster for SecureAI, the counterpart of ../eks-gpu: a CPU node pool for the pipeline,
# API and Flower, and a tainted GPU node pool for Triton (NVIDIA L4 by default, the driver
# installed by GKE) labelled secureai.io/node-pool=gpu and tainted nvidia.com/gpu:NoSchedule,
# which helm/secureai/values-gpu.yaml selects and tolerates. Private nodes, Workload Identity,
# secrets encrypted with a Cloud KMS key when one is given, Filestore CSI for the chart's
# ReadWriteMany volumes (storage class standard-rwx).

locals {
  gpu_label = { "secureai.io/node-pool" = "gpu" }
  oauth     = ["https://www.googleapis.com/auth/cloud-platform"]
}

# ------------------------------------------------------------------ node identity
# Nodes run as their own service account with only what logging, monitoring and image pulls need
# (not the Compute Engine default account, which is an Editor).
resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${var.name}-gke-nodes"
  display_name = "${var.name} GKE nodes"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
  ])
  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

# ------------------------------------------------------------------ control plane
resource "google_container_cluster" "this" {
  project  = var.project_id
  name     = var.name
  location = var.region

  # Node pools are managed below; GKE needs one at creation, removed at once.
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = var.deletion_protection

  network    = var.network
  subnetwork = var.subnetwork
  ip_allocation_policy {
    cluster_secondary_range_name  = var.pods_range_name
    services_secondary_range_name = var.services_range_name
  }

  release_channel {
    channel = var.release_channel
  }
  min_master_version = var.kubernetes_version

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = !var.endpoint_public_access
    master_ipv4_cidr_block  = var.master_ipv4_cidr_block
  }

  # The DNS-based endpoint lets kubectl and helm reach the control plane from outside the VPC
  # (the deploy workflow on GitHub-hosted runners) with IAM authorization, while the IP endpoint
  # stays private.
  control_plane_endpoints_config {
    dns_endpoint_config {
      allow_external_traffic = var.dns_endpoint_external
    }
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr_block
        display_name = cidr_blocks.value.display_name
      }
    }
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  dynamic "database_encryption" {
    for_each = var.secrets_kms_key == null ? [] : [var.secrets_kms_key]
    content {
      state    = "ENCRYPTED"
      key_name = database_encryption.value
    }
  }

  addons_config {
    gce_persistent_disk_csi_driver_config {
      enabled = true
    }
    gcp_filestore_csi_driver_config {
      enabled = true
    }
  }

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "APISERVER", "WORKLOADS"]
  }

  enable_shielded_nodes = true
  resource_labels       = var.labels
}

# ------------------------------------------------------------------ nodes
resource "google_container_node_pool" "system" {
  project        = var.project_id
  name           = "${var.name}-system"
  cluster        = google_container_cluster.this.id
  location       = var.region
  node_locations = var.node_locations

  autoscaling {
    min_node_count = var.system_scaling.min
    max_node_count = var.system_scaling.max
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.system_machine_type
    disk_size_gb    = 50
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = local.oauth
    labels          = { "secureai.io/node-pool" = "system" }
    resource_labels = var.labels

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  depends_on = [google_project_iam_member.nodes]
}

resource "google_container_node_pool" "gpu" {
  project        = var.project_id
  name           = "${var.name}-gpu"
  cluster        = google_container_cluster.this.id
  location       = var.region
  node_locations = var.gpu_node_locations

  autoscaling {
    min_node_count = var.gpu_scaling.min
    max_node_count = var.gpu_scaling.max
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.gpu_machine_type
    disk_size_gb    = var.gpu_disk_size_gb
    disk_type       = "pd-ssd"
    image_type      = "COS_CONTAINERD"
    spot            = var.gpu_spot
    service_account = google_service_account.nodes.email
    oauth_scopes    = local.oauth
    labels          = local.gpu_label
    resource_labels = var.labels

    # GKE installs the NVIDIA driver (no driver DaemonSet to manage) and the device plugin
    # that advertises nvidia.com/gpu, which the chart's Triton requests.
    guest_accelerator {
      type  = var.gpu_accelerator_type
      count = var.gpu_count
      gpu_driver_installation_config {
        gpu_driver_version = var.gpu_driver_version
      }
    }

    # Only pods that tolerate the GPU taint (Triton) land here. GKE puts this same taint on GPU
    # nodes by itself; it is declared so that the plan shows it.
    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  depends_on = [google_project_iam_member.nodes]
}
