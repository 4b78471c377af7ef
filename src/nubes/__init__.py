"""nubes: one serverless analytics app on AWS Lambda, Google Cloud Functions and Azure Functions."""
__version__ = "0.1.0"
