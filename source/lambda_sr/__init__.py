"""AWS Lambda hosts of POST /resolution (API Gateway REST proxy events, through Mangum)."""
