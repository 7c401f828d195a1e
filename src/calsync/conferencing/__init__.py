"""calsync.conferencing"""
