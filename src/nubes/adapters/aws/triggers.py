"""AWS naming rules for trigger bindings (S3 buckets of ``[deploy.aws.sources]``, SQS queues of
``[deploy.aws.queues]``), each with its source."""

from __future__ import annotations

from collections.abc import Mapping

from nubes.adapters.naming import bucket_rule, is_ip, pattern, problems

# docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html: 3-63 characters, lower-case
# letters, digits, dots and hyphens, beginning and ending with a letter or digit, no two adjacent
# dots, not an IP address, not starting with xn-- / sthree- nor ending with -s3alias / --ol-s3.
bucket_problem = bucket_rule(
    r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "3-63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit",
    (lambda n: ".." in n or is_ip(n), "no adjacent dots and not an IP address"),
    (lambda n: n.startswith(("xn--", "sthree-")) or n.endswith(("-s3alias", "--ol-s3")),
     "reserved prefix or suffix (xn--, sthree-, -s3alias, --ol-s3)"),
)


# docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html: up to 80
# characters, alphanumerics, hyphens and underscores; a FIFO queue's name ends in .fifo.
queue_problem = pattern(r"(?=.{1,80}$)[A-Za-z0-9_-]+(\.fifo)?", "1-80 letters, digits, '-' and '_' (FIFO: ending in .fifo)")


def binding_problems(sources: Mapping[str, str], queues: Mapping[str, str]) -> list[str]:
    return problems("aws", "s3", bucket_problem, queue_problem, "SQS queue", sources, queues)
