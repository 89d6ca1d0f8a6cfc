from django.urls import path
from notes import views

urlpatterns = [
    path("deliveries/", views.push_deliveries),
    path("deliveries/status/", views.status),
]
