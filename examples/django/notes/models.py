from django.db import models


class Delivery(models.Model):
    """A message the task function "sent": written by a worker process, through the ORM."""

    task_id = models.CharField(max_length=64, unique=True)
    phone = models.CharField(max_length=32)
    text = models.TextField()
    worker_pid = models.IntegerField()
    created = models.DateTimeField(auto_now_add=True)


class BatchRecord(models.Model):
    """One row per ended batch, written by the batch-end callback."""

    batch_id = models.CharField(max_length=64, unique=True)
    passed = models.IntegerField()
    failed = models.IntegerField()
