"""What one task is and how its function is reached: turning a return value into a verdict
(``remarks``), time limits (``timeouts``), functions stored by import path behind the allow-list (``imports``)."""
