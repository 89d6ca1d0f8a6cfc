import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from rq_serviceq.contrib.django import get_serviceq


@csrf_exempt
@require_POST
def push_deliveries(request: HttpRequest) -> JsonResponse:
    """POST a JSON list of {"phone", "text"}: one push, one batch (or joins the running one)."""
    task_ids = get_serviceq("deliveries").push_many(json.loads(request.body))
    return JsonResponse({"task_ids": task_ids}, status=202)


@require_GET
def status(request: HttpRequest) -> JsonResponse:
    return JsonResponse(get_serviceq("deliveries").get_status_info())
