"""calsync.engine"""
