"""The API's route modules, one per area; :func:`tsunagu.api.app.create_app` mounts them."""
