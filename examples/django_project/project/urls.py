from __future__ import annotations

from django.urls import path

from project import views

urlpatterns = [path("", views.checkout)]
