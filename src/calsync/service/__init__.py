"""calsync.service"""
