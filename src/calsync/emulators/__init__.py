"""calsync.emulators"""
