"""Image super-resolution core: model store, tiling engine, codecs; hosts stay thin around it.

Import the submodules you need (``superres.engine``, ``superres.store`` ...):
this package imports nothing heavy itself, so a host that only validates
requests (the invoke-endpoint Lambda) never loads torch.
"""
