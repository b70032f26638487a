"""AWS quotas Galley relies on, each with the page it comes from."""

#: Longest visibility timeout SQS accepts (12 hours).
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html
MAX_VISIBILITY_TIMEOUT_SECONDS = 12 * 60 * 60

#: Longest per-message delay (DelaySeconds) SQS accepts.
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-delay-queues.html
MAX_DELAY_SECONDS = 15 * 60

#: Longest a ReceiveMessage call may long-poll.
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html
MAX_WAIT_TIME_SECONDS = 20

#: Largest message body SQS accepts (1 MiB).
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html
MAX_MESSAGE_BYTES = 1024 * 1024

#: Most messages one ReceiveMessage or SendMessageBatch call handles.
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html
MAX_BATCH_MESSAGES = 10

#: Largest total payload of one SendMessageBatch call (all entries together, 1 MiB).
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html
MAX_BATCH_PAYLOAD_BYTES = 1024 * 1024

#: Longest queue name; letters, digits, '-' and '_', '.fifo' suffix for FIFO queues.
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-queues.html
MAX_QUEUE_NAME_LENGTH = 80

#: S3 bucket names: 3-63 characters of lowercase letters, digits, '.' and '-'.
#: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
MIN_BUCKET_NAME_LENGTH = 3
MAX_BUCKET_NAME_LENGTH = 63

#: CloudWatch Embedded Metric Format: most metrics in one document, most values of one metric
#: (an array), most dimensions in one dimension set, longest dimension value.
#: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
#: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_Dimension.html
MAX_EMF_METRICS = 100
MAX_EMF_VALUES = 100
MAX_EMF_DIMENSIONS = 30
MAX_DIMENSION_VALUE_CHARS = 1024

#: CloudWatch rejects metric values outside -2^360 .. 2^360.
#: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDatum.html
MAX_METRIC_VALUE = 2.0**360
