"""calsync.store"""
