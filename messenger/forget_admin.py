"""The admin action "Forget these users", on the inbox and on conversations.

A Django user looks for a person where their conversation is (found by PSID), so the action sits on
the conversation list as well as the inbox list. The conversations app must not import the channel,
so the action is added to its admin from here (``ConversationAdmin.actions``), the arrow still
pointing down. Like Django's own "Delete selected", it asks for confirmation first, then calls
``messenger.forget.user_forget`` once per distinct user (page, PSID) among the selected rows, with
the staff username as the actor. It needs the delete permission on the list's model
(``has_forget_permission`` on both admins asks Django's permissions for it), although neither admin
offers a Delete itself: erasing a user is this action's job, done whole, never a row at a time.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from conversations.admin import ConversationAdmin
from messenger.forget import ForgetResult, user_forget

CONFIRM_TEMPLATE = "admin/messenger/forget_confirmation.html"


@admin.action(description="Forget these users (delete everything stored about them)", permissions=["forget"])
def forget_users(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet):
    users = sorted(set(queryset.values_list("page_id", "psid")))
    if request.POST.get("confirm") != "yes":
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": "Forget these users?",
            "opts": modeladmin.model._meta,
            "users": users,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, CONFIRM_TEMPLATE, context)
    total = ForgetResult()
    for page_id, psid in users:
        total += user_forget(page_id=page_id, psid=psid, actor=request.user.get_username())
    summary = ", ".join(f"{count} {kind}" for kind, count in total.as_dict().items())
    modeladmin.message_user(request, f"Forgot {len(users)} user(s): deleted {summary}.", messages.SUCCESS)
    return None


def _install() -> None:
    """Add the action to the conversation admin (idempotent); the inbox admin lists it itself."""
    if forget_users not in ConversationAdmin.actions:
        ConversationAdmin.actions = (*ConversationAdmin.actions, forget_users)


_install()
