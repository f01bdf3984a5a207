"""A syntax error, which awslambdaric reports as Runtime.UserCodeSyntaxError."""

def handler(event, context)
    return {}
