from tests.ray_fixtures import ray_cluster  # noqa: F401  (shared session fixture)
