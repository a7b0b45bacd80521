"""The admin of pages: name, id, active and a "token set" flag; the token itself is write-only.

Choice: the token can be *replaced* from the admin, never read. The form has a password field that
is never rendered with a value (``render_value=False``) and is empty on every change page; left
empty it keeps the stored token, filled it replaces it (encrypted by ``messenger.pages``, like
``messenger_page add``). Why allow it at all: an operator whose token Facebook just revoked is
usually in the admin already (``/healthz`` and ``messenger_check`` name the failing page), and a
write-only field shows nothing a staff member could copy. Only users with the change permission on
pages see the form. Adding a page needs a token; removing one is Django's delete.

Registered from ``messenger.admin``.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin

from messenger.models import Page
from messenger.pages import page_token_replace, pages_cache_clear


class PageForm(forms.ModelForm):
    token = forms.CharField(
        label="Page access token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only: never shown. Leave empty to keep the stored token; fill it to replace it.",
    )

    class Meta:
        model = Page
        fields = ("id", "name", "active")

    def clean(self):
        cleaned = super().clean()
        if self.instance._state.adding and not cleaned.get("token"):
            self.add_error("token", "A new page needs its token.")
        return cleaned


@admin.register(Page)
class PageAdmin(admin.ModelAdmin):
    form = PageForm
    list_display = ("id", "name", "active", "token_set", "updated_at")
    list_filter = ("active",)
    search_fields = ("=id", "name")
    readonly_fields = ("token_set", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # The id is the page's identity: fixed once the page exists.
        return (*self.readonly_fields, "id") if obj is not None else self.readonly_fields

    @admin.display(boolean=True, description="token set")
    def token_set(self, obj: Page) -> bool:
        return obj.token_set

    def save_model(self, request, obj: Page, form, change) -> None:
        token = form.cleaned_data.get("token")
        if token:
            page_token_replace(page=obj, token=token)
        super().save_model(request, obj, form, change)
        pages_cache_clear()

    def delete_model(self, request, obj: Page) -> None:
        super().delete_model(request, obj)
        pages_cache_clear()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        pages_cache_clear()
