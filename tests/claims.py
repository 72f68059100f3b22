"""Claims of the people tests sign in as, for the `token` fixture (or `mint`)."""

from services.common.auth import GLOBAL_ADMINISTRATOR

# a user who may manage role assignments: the permission and an administrator's directory role
ROLE_ADMIN = {"scopes": ["RoleManagement.ReadWrite.Directory"], "wids": [GLOBAL_ADMINISTRATOR]}
