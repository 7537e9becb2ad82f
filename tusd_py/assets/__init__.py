"""The asset lifecycle: Create-an-asset API, media detection, duration, per-minute billing.

`tusd_py.assets.platform.create_platform_app` composes it with the tus endpoint.
"""
