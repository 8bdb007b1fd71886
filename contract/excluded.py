"""Django tests that cannot apply to an object store, each with why; contract/EXCLUDED.md is made from this.

A test is listed only when what it checks is a local filesystem (paths, files
or directories on disk, permissions, symlinks, OS-level races and locks, temp
files), an option or default that only FileSystemStorage or InMemoryStorage
has, or InMemoryStorage's own directory tree. Never because NatsStorage fails
it: those failures are the point of the run. Patterns are fnmatch patterns on
unittest ids; ``*`` covers the FileStorageTests subclasses (Custom-,
Overwriting-, DiscardingFalseContent-StorageTests).

In ``staticfiles_tests`` only three kinds are excluded: symlinks (``--link``),
permission bits, and ``path()``: what reads or writes STATIC_ROOT or MEDIA_ROOT
on disk, or takes a storage's answer as a local path (``storage.path()``,
``is_local_storage()``, which Django answers True only for FileSystemStorage;
collectstatic then names the destination directory, checks it before
prompting and finds media files). The sources stay on disk, as in a project.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

FS = "file_storage.tests."
MEM = "file_storage.test_inmemory_storage."
ST = "staticfiles_tests."
MANIFEST = ST + "test_storage.TestCollectionManifestStorage."

EXCLUDED: tuple[tuple[str, str], ...] = (
    # -- file_storage/tests.py ------------------------------------------------------
    (FS + "*.test_empty_location", "FileSystemStorage's location semantics: '' means os.getcwd()"),
    (FS + "*.test_file_get_accessed_time*", "access time: a filesystem notion (Storage documents NotImplementedError)"),
    (FS + "*.test_file_get_created_time", "compares with os.path.getctime(storage.path(name))"),
    (FS + "*.test_file_get_modified_time", "compares with os.path.getmtime(storage.path(name))"),
    (FS + "*.test_file_save_without_name", "asserts the file is on disk (os.path.exists in the temp dir)"),
    (FS + "*.test_file_save_with_path", "asserts the file is on disk (os.path.exists); see test_inmemory test_exists"),
    (FS + "*.test_file_save_broken_symlink", "symlinks on disk"),
    (FS + "*.test_file_path", "storage.path(): absolute local paths"),
    (FS + "*.test_listdir", "lists an empty directory made by os.mkdir(); see test_inmemory test_listdir"),
    (FS + "*.test_file_storage_preserves_filename_case", "asserts storage.path() of a mixed-case name"),
    (FS + "*.test_makedirs_race_handling", "monkeypatches os.makedirs: directory-creation races on disk"),
    (FS + "*.test_remove_race_handling", "monkeypatches os.remove: removal races on disk"),
    (FS + "*.test_delete_deletes_directories", "deletes a directory made on disk in storage.location"),
    (FS + "*.test_setting_changed", "MEDIA_ROOT/MEDIA_URL/FILE_UPLOAD_*PERMISSIONS defaults of FileSystemStorage"),
    (FS + "*.test_file_methods_pathlib_path", "asserts storage.path(Path(...)) is in the temp dir"),
    (FS + "OverwritingStorageOSOpenFlags*", "FileSystemStorage.OS_OPEN_FLAGS (os.open flags, deprecated)"),
    (FS + "OverwritingStorageTests.test_save_overwrite_behavior_temp_file", "asserts the file is on disk"),
    (FS + "FileFieldStorageTests.test_extended_length_storage", "asks the local filesystem's NAME_MAX (os.pathconf)"),
    (FS + "FileFieldStorageTests.test_file_object", "opens temp_storage.path(name) with open()"),
    (FS + "FieldCallableFileStorageTests.test_callable_storage_file_field_in_model", "asserts .location == local dir"),
    (FS + "FileSaveRaceConditionTest.*", "reads the outcome with os.listdir() of the temp dir"),
    (FS + "FileStoragePermissions.*", "file and directory permission bits, umask"),
    (FS + "FileStoragePathParsing.*", "reads the outcome with os.listdir()/os.path.exists() of the temp dir"),
    (FS + "StorageHandlerTests.test_defaults", "Django's default STORAGES, which this harness replaces"),
    # -- file_storage/test_inmemory_storage.py --------------------------------------
    (MEM + "MemoryStorageIOTests.test_open_dir_as_file", "IsADirectoryError: directory nodes of a file tree"),
    (MEM + "MemoryStorageIOTests.test_removing_temporary_file_after_save", "TemporaryUploadedFile removed from disk"),
    (MEM + "MemoryStorageIOTests.test_delete", "deletes a directory tree: InMemoryStorage only"),
    (MEM + "MemoryStorageIOTests.test_file_node_cannot_have_children", "FileExistsError: a file cannot be a directory"),
    (MEM + "MemoryStorageIOTests.test_url", "MEDIA_URL=None default when no base_url is given"),
    (MEM + "MemoryStorageTimesTests.test_file_accessed_time", "access time is a filesystem notion"),
    (MEM + "MemoryStorageTimesTests.test_file_created_time", "writes to a file opened 'r'; ctime kept on rewrite"),
    (MEM + "MemoryStorageTimesTests.test_directory_times_*", "timestamps of directory nodes"),
    (MEM + "InMemoryStorageTests.*", "InMemoryStorage's constructor options and MEDIA_ROOT/MEDIA_URL defaults"),
    # -- model_fields ----------------------------------------------------------------
    ("model_fields.test_filefield.FileFieldTests.test_move_temporary_file", "temp upload moved on disk (MEDIA_ROOT)"),
    ("model_fields.test_imagefield.ImageFieldTests.test_instantiate_missing", "moves the file away via .path"),
    ("model_fields.test_imagefield.ImageFieldTests.test_delete_when_missing", "os.remove(.path)"),
    # -- files/tests.py: never touches a storage; OS-level file primitives are left out ---
    ("files.tests.FileTests.test_exclusive_lock", "OS file locks"),
    ("files.tests.FileTests.test_shared_lock", "OS file locks"),
    ("files.tests.FileTests.test_open_supports_full_signature", "open() with an os-level opener"),
    ("files.tests.FileTests.test_namedtemporaryfile_closes", "NamedTemporaryFile on disk"),
    ("files.tests.FileTests.test_open_reopens_closed_file_and_returns_context_manager", "reopens a temp file on disk"),
    ("files.tests.FileMoveSafeTests.*", "file_move_safe(): moving files on disk"),
    ("files.tests.TemporaryUploadedFileTests.*", "TemporaryUploadedFile on disk, FILE_UPLOAD_TEMP_DIR"),
    # -- staticfiles_tests: only symlinks, permissions and path() (files and directories on disk) ----
    (ST + "test_management.TestCollectionLinks.*", "symlinks: collectstatic --link makes them on a local disk"),
    (ST + "test_storage.TestStaticFilePermissions.*", "permissions: mode bits of collected files and directories"),
    (MANIFEST + "test_manifest_does_not_ignore_permission_error", "permissions: built-in open() of a local manifest"),
    (MANIFEST + "test_manifest_exists", "path(): os.path.exists(staticfiles_storage.path(manifest_name))"),
    (MANIFEST + "test_clear_empties_manifest", "path(): os.path.exists(staticfiles_storage.path(name))"),
    (MANIFEST + "test_intermediate_files", "path(): os.listdir() of STATIC_ROOT/cached on disk"),
    (ST + "test_storage.TestCustomManifestStorage.test_read_manifest", "path(): the manifest written as a local file"),
    (ST + "test_storage.TestCustomManifestStorage.test_save_manifest_create", "path(): os.remove(), Path.exists()"),
    (ST + "test_finders.TestDefaultStorageFinder.test_find_first", "path(): the finder answers storage.path(name)"),
    (ST + "test_finders.TestDefaultStorageFinder.test_find_all", "path(): the finder answers storage.path(name)"),
    (ST + "test_finders.TestDefaultStorageFinder.test_find_all_deprecated_param", "path(): as test_find_all"),
    (ST + "test_finders.TestMiscFinder.test_location_empty", "path(): the default storage's local location"),
    (ST + "test_management.TestFindStatic.test_all_files_more_verbose", "path(): lists MEDIA_ROOT, a local directory"),
    (ST + "test_management.TestConfiguration.test_location_empty", "path(): refuses an unset STATIC_ROOT"),
    (ST + "test_management.TestConfiguration.test_local_storage_detection_helper", "path(): is_local_storage()"),
    (ST + "test_management.TestCollectionVerbosity.test_verbosity_[12]", "path(): 'copied to <storage.path('')>'"),
    (ST + "test_management.TestInteractiveMessages.test_no_warning_*", "path(): only a local STATIC_ROOT is looked at"),
    (ST + "test_management.TestCollectionNeverCopyStorage.*", "path(): its storage reads STATIC_ROOT on disk"),
)


def reason_for(test_id: str) -> tuple[str, str] | None:
    """The (pattern, reason) that excludes ``test_id``, or None."""
    for pattern, reason in EXCLUDED:
        if fnmatchcase(test_id, pattern):
            return pattern, reason
    return None


def markdown(matches: dict[str, list[str]]) -> str:
    """EXCLUDED.md: every pattern, its reason, and the test ids it took out in the last full run."""
    lines = [
        "# Tests excluded from the contract run",
        "",
        "Generated by `contract/run.py` from `contract/excluded.py`; edit that file, not this one.",
        "",
        "A test is excluded only when it is about a local filesystem (paths, files or directories on disk,",
        "permissions, symlinks, OS-level races and locks, temp files), an option or default only",
        "FileSystemStorage or InMemoryStorage has, or InMemoryStorage's directory tree; never because",
        "NatsStorage fails it. In `staticfiles_tests`, only symlinks, permissions and `path()` (STATIC_ROOT or",
        "MEDIA_ROOT read or written on disk, a storage's answer taken as a local path).",
        "",
    ]
    for pattern, reason in EXCLUDED:
        ids = matches.get(pattern, [])
        lines.append(f"- `{pattern}`: {reason} ({len(ids)} test{'s' if len(ids) != 1 else ''})")
        lines.extend(f"  - `{test_id}`" for test_id in sorted(ids))
    return "\n".join(lines) + "\n"
