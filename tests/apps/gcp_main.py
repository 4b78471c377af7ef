"""The contract app as a Cloud Functions HTTP target, written as a user deploys it (``--target main``)."""

from contract_app import app

from nubes.adapters.gcp.functions import http_function

main = http_function(app)
