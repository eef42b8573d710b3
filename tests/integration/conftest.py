from tests.ray_fixtures import ray_cluster, ray_dashboard_url  # noqa: F401  (shared session fixtures)
