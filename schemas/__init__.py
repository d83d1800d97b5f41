"""The API contract: request and response models, enums and the error shape."""
