"""Task table, readers of the official release formats, metrics and LightningDataModules."""
from bortlab.data.tasks import Task, TaskError, all_tasks, get_task, read_split

__all__ = ["Task", "TaskError", "all_tasks", "get_task", "read_split"]
