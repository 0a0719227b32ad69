"""The HTTP gateway: API, uploads to S3, the ACCEPT step (ARCHITECTURE §2)."""
