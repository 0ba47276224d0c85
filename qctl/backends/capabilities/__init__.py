"""Capability protocols beyond the core, one module per capability, with their neutral
data classes. Engines import these; backends implement them. Each is registered in
``qctl.backends.CAPABILITIES`` so ``qctl plugins list`` and the contract tests know it.
"""
