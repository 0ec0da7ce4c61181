-- wrk script for infra/load.sh: every request adds $1.00 (admin custom credits).
wrk.method = "POST"
wrk.body = '{"amount": "1.00", "reason": "load test (wrk)"}'
