"""Who is asking and what they may do: authentication, authorization and the admission
checks that depend on the caller. ``user.UserInfo`` is the one type the parts share."""
