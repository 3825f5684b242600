output "release" {
  description = "Name, namespace and revision of the release."
  value = {
    name      = helm_release.secureai.name
    namespace = helm_release.secureai.namespace
    revision  = helm_release.secureai.metadata[0].revision
  }
}
